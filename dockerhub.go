package registry

import "strings"

// Docker Hub's names, in one place: what users and containerd call it,
// where the registry really is, the key Docker's config.json files its
// login under, and the "library/" namespace of its official images.
const (
	dockerHubDomain   = "docker.io"
	dockerHubRegistry = "registry-1.docker.io"
	dockerHubKey      = "https://index.docker.io/v1/"
	dockerHubLibrary  = "library/"
)

// RegistryName is the name a registry host goes by in ns parameters,
// hosts.toml directories and image names: lower case, and "docker.io" for
// every one of Docker Hub's host names (index.docker.io,
// registry-1.docker.io, registry.hub.docker.com), as containerd names it.
func RegistryName(host string) string {
	host = strings.ToLower(strings.TrimSpace(host))
	switch host {
	case "index.docker.io", dockerHubRegistry, "registry.hub.docker.com":
		return dockerHubDomain
	}
	return host
}

// RepositoryName is the repository a name means on the registry called
// registryName ([RegistryName]): on Docker Hub a one-component name is
// an official image, under "library/"; elsewhere names are as written.
func RepositoryName(registryName, name string) string {
	if RegistryName(registryName) == dockerHubDomain && !strings.Contains(name, "/") {
		return dockerHubLibrary + name
	}
	return name
}
