# The module does not exist anywhere: loading this handler is an init failure.
import tamaya_itest_no_such_module  # noqa: F401


def handler(event, context):
    return "unreachable"
