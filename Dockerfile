# syntax=docker/dockerfile:1
#
# attlsd container image: a static binary on distroless/static (CA
# certificates for outbound system roots, no shell), run as a non-root user.
#
#   docker build -t attlsd --build-arg VERSION="$(git describe --tags --always)" .
#   docker run --rm -p 8443:8443 -v "$PWD/policy:/etc/attlsd:ro" attlsd
#
# The policy goes in /etc/attlsd/policy.hcl (or pass other arguments to
# "attlsd"); it and the files it names must be readable by uid 65532.
# examples/kubernetes runs this image beside an app.

ARG GO_VERSION=1.26.8

# Built on the build machine's platform and cross-compiled for the target,
# so a multi-platform build needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.buildVersion=${VERSION}" \
      -o /out/attlsd ./cmd/attlsd

# Pin by digest in production: FROM gcr.io/distroless/static-debian12:nonroot@sha256:...
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/attlsd /usr/local/bin/attlsd
# Numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 65532:65532
# The TLS port of the example policies and the usual admin port.
EXPOSE 8443 9901
ENTRYPOINT ["/usr/local/bin/attlsd"]
CMD ["run", "--policy", "/etc/attlsd/policy.hcl"]
