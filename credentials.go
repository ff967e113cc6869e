package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// helperTimeout bounds one credential helper run.
const helperTimeout = 30 * time.Second

// dockerConfigFile is the part of Docker's config.json read here.
type dockerConfigFile struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredHelpers map[string]string `json:"credHelpers"`
	CredsStore  string            `json:"credsStore"`
}

// DockerConfig is a [CredentialSource] that reads Docker's config.json, at
// path or, if path is empty, at $DOCKER_CONFIG/config.json or
// ~/.docker/config.json. The file is read on each lookup (a client looks
// up once). For a host it tries, in order:
//
//  1. credHelpers[host]: runs docker-credential-<name> get;
//  2. credsStore: the same with the default helper;
//  3. auths[host]: "auth" (base64 user:password), username/password, or
//     "identitytoken".
//
// Docker Hub's hosts use the key https://index.docker.io/v1/; other hosts
// match with or without an https:// prefix. A missing file, or no entry,
// means anonymous. A helper that says the credentials are not found means
// anonymous; one that fails or is missing returns an error, which does not
// stop an anonymous pull (see [CredentialSource]).
func DockerConfig(path string) CredentialSource {
	return CredentialFunc(func(ctx context.Context, host string) (Credential, error) {
		return dockerConfigLookup(ctx, path, host)
	})
}

// CredentialHelper is the credentials a Docker credential helper keeps:
// docker-credential-<name> (found on PATH) is run with "get" for each
// host, given the host as Docker would name it (https://index.docker.io/v1/
// for Docker Hub). A helper that says the credentials are not found means
// anonymous; one that fails or is missing returns an error.
func CredentialHelper(name string) CredentialSource {
	return CredentialFunc(func(ctx context.Context, host string) (Credential, error) {
		key := host
		if RegistryName(host) == dockerHubDomain {
			key = dockerHubKey
		}
		return runCredentialHelper(ctx, name, key)
	})
}

func dockerConfigPath(path string) string {
	if path != "" {
		return path
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

func dockerConfigLookup(ctx context.Context, path, host string) (Credential, error) {
	p := dockerConfigPath(path)
	if p == "" {
		return Credential{}, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Credential{}, nil
	}
	if err != nil {
		return Credential{}, fmt.Errorf("docker config: %w", err)
	}
	var cfg dockerConfigFile
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Credential{}, fmt.Errorf("docker config %s: invalid JSON: %v", p, err)
	}
	keys := []string{host, "https://" + host, "http://" + host, "https://" + host + "/v1/", "https://" + host + "/v2/"}
	if RegistryName(host) == dockerHubDomain {
		keys = []string{dockerHubKey, dockerHubDomain, "index." + dockerHubDomain, dockerHubRegistry}
	}
	for _, k := range keys {
		if helper, ok := cfg.CredHelpers[k]; ok {
			return runCredentialHelper(ctx, helper, keys[0])
		}
	}
	if cfg.CredsStore != "" {
		cred, err := runCredentialHelper(ctx, cfg.CredsStore, keys[0])
		if err != nil || !cred.anonymous() {
			return cred, err
		}
	}
	for _, k := range keys {
		a, ok := cfg.Auths[k]
		if !ok {
			continue
		}
		cred := Credential{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return Credential{}, fmt.Errorf("docker config %s: auths[%q].auth is not base64", p, k)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return Credential{}, fmt.Errorf("docker config %s: auths[%q].auth is not user:password", p, k)
			}
			cred.Username, cred.Password = user, pass
		}
		if cred.IdentityToken != "" {
			cred.Username, cred.Password = "", ""
		}
		return cred, nil
	}
	return Credential{}, nil
}

// runCredentialHelper runs docker-credential-<name> get with the server
// URL on stdin and reads {"ServerURL","Username","Secret"} from stdout.
// Username "<token>" means Secret is an identity token.
func runCredentialHelper(ctx context.Context, name, serverURL string) (Credential, error) {
	if strings.ContainsAny(name, `/\`) || name == "" {
		return Credential{}, fmt.Errorf("credential helper %q: invalid name", printable(name, 40))
	}
	ctx, cancel := context.WithTimeout(ctx, helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-credential-"+name, "get")
	cmd.Stdin = strings.NewReader(serverURL + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		out := stdout.String() + stderr.String()
		if strings.Contains(strings.ToLower(out), "credentials not found") {
			return Credential{}, nil
		}
		return Credential{}, fmt.Errorf("credential helper docker-credential-%s: %v: %s", name, err, printable(strings.TrimSpace(stderr.String()), 200))
	}
	var resp struct {
		Username string `json:"Username"`
		Secret   string `json:"Secret"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return Credential{}, fmt.Errorf("credential helper docker-credential-%s: output is not JSON", name)
	}
	if resp.Username == "<token>" {
		return Credential{IdentityToken: resp.Secret}, nil
	}
	return Credential{Username: resp.Username, Password: resp.Secret}, nil
}
