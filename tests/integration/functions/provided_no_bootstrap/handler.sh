#!/bin/sh
# A 'provided' artifact without the required executable `bootstrap` at its root.
echo '{"never": "runs"}'
