// An ES module handler (.mjs): uses top-level await, which only ESM allows.
const greeting = await Promise.resolve('hello from esm');

export const handler = async (event) => ({ style: 'esm', greeting, event });
