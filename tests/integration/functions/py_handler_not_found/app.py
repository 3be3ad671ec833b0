# Deployed with handler app.handler, which this module does not define.
def other(event, context):
    return "not the handler"
