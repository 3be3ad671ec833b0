// An async handler (CommonJS): echoes the event and some context fields.
exports.handler = async (event, context) => ({
  style: 'async',
  event,
  requestId: context.awsRequestId,
  functionName: context.functionName,
  memoryLimitInMB: context.memoryLimitInMB,
  remaining: context.getRemainingTimeInMillis(),
});
