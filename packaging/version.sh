#!/bin/sh
# Prints the version of this checkout for `make build` and `make package`
# (packaging.CleanVersion turns it into the deb/rpm version):
#   on a tag vX.Y.Z           vX.Y.Z                  -> X.Y.Z
#   N commits after the tag   vX.Y.Z-N-gHASH          -> X.Y.Z+N.gHASH
#   no tag yet                0.0.0-N-gHASH (N: commits) -> 0.0.0+N.gHASH
#   uncommitted changes       ...-dirty
# so that every build sorts after the ones before it. Run it in the checkout.
if git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null; then
	exit 0
fi
if ! n=$(git rev-list --count HEAD 2>/dev/null); then
	echo 0.0.0-dev # not a git checkout
	exit 0
fi
dirty=
git diff --quiet HEAD -- 2>/dev/null || dirty=-dirty
echo "0.0.0-$n-g$(git rev-parse --short=7 HEAD)$dirty"
