module github.com/ocipull/registry

go 1.25.0

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/opencontainers/go-digest v1.0.0
	github.com/opencontainers/image-spec v1.1.1
)

require golang.org/x/crypto v0.52.0
