class ItestError extends Error {}
ItestError.prototype.name = 'ItestError';

exports.handler = async () => {
  throw new ItestError('node boom');
};
