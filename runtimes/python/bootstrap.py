"""What the daemon starts: `python3 -I bootstrap.py` with cwd = LAMBDA_TASK_ROOT.

The client itself is tamaya_runtime.py: a main script is compiled from source on every start
(several ms for the client), an imported module's bytecode is cached in __pycache__.
"""

import sys

# -I leaves this folder off sys.path; add it just long enough to import the client, so that
# user code never sees (or shadows) the runtime's files.
sys.path.insert(0, __file__.rpartition("/")[0] or ".")
try:
    import tamaya_runtime
finally:
    del sys.path[0]

tamaya_runtime.run()
