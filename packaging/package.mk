# Packaging targets; the top Makefile includes this file.
#
#   make package     builds the static binary $(BIN) and, next to it,
#                    redhaven_<version>_<debarch>.deb and
#                    redhaven-<version>-1.<rpmarch>.rpm (nfpm's names)
#   make e2e-image   builds the e2e Docker images: the Debian base
#                    (debootstrap, cached by tag) and a node image with the
#                    .deb installed; prints the node image tag
#
# Inputs (the top Makefile sets the first two): BIN (dist/redhaven),
# VERSION (packaging/version.sh: the tag vX.Y.Z, vX.Y.Z-N-gHASH between
# tags, 0.0.0-N-gHASH before the first; cleaned into a deb/rpm version by
# packaging.CleanVersion), LDFLAGS, PKG_ARCH (GOARCH; default: the host's).
PKG_BIN ?= $(if $(BIN),$(BIN),dist/redhaven)
PKG_VERSION ?= $(if $(VERSION),$(VERSION),$(shell ./packaging/version.sh))
PKG_LDFLAGS ?= $(if $(LDFLAGS),$(LDFLAGS),-s -w -X main.version=$(PKG_VERSION))
PKG_ARCH ?= $(shell go env GOARCH)
PKG_DIR ?= $(patsubst %/,%,$(dir $(PKG_BIN)))

.PHONY: package e2e-image image

package: ## build dist/redhaven and the .deb and .rpm packages
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_ARCH) go build -trimpath \
		-ldflags "$(PKG_LDFLAGS)" -o $(PKG_BIN) ./cmd/redhaven
	rm -f $(PKG_DIR)/redhaven_*.deb $(PKG_DIR)/redhaven-*.rpm
	go run ./packaging/build -config packaging/nfpm.yaml -bin $(PKG_BIN) \
		-version "$(PKG_VERSION)" -arch $(PKG_ARCH) -out $(PKG_DIR)

image: package ## build the Docker image redhaven:VERSION from the .deb (see packaging/docker-compose.yml)
	./e2e/image.sh app "$$(ls $(PKG_DIR)/redhaven_*.deb)" "$$(go run ./packaging/build -print-version -version '$(PKG_VERSION)')"

e2e-image: package ## build the e2e Docker images (Debian base + node image with the .deb)
	./e2e/image.sh node "$$(ls $(PKG_DIR)/redhaven_*.deb)"
