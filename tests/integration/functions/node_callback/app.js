// A callback-style handler that answers later from a timer.
exports.handler = (event, context, callback) => {
  setTimeout(() => callback(null, { style: 'callback', event, requestId: context.awsRequestId }), 20);
};
