#!/bin/sh
# /usr/bin/netacct of the packages: netacct with the Node.js runtime the
# package carries, found relative to this file so that it runs from any root.
lib=$(dirname "$(readlink -f "$0")")/../lib/netacct
PATH=$lib/node/bin:$PATH exec "$lib/bin/netacct.js" "$@"
