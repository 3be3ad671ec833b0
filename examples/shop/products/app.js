// Products service: a fixed catalogue, listed or looked up by id.
const PRODUCTS = [
  { id: "p1", name: "Teapot", price_cents: 2500 },
  { id: "p2", name: "Cup", price_cents: 700 },
];

exports.handler = async (event) => {
  const id = event.pathParameters && event.pathParameters.id;
  if (!id) return { products: PRODUCTS }; // plain JSON: the gateway answers 200 application/json
  const product = PRODUCTS.find((p) => p.id === id);
  if (!product) return { statusCode: 404, body: JSON.stringify({ message: `no product ${id}` }) };
  return product;
};
