package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/oci"
)

// dockerArchiveManifest is one entry of a docker-archive's manifest.json,
// the file docker load and podman load read.
type dockerArchiveManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// pullArchive writes one image of ref as a docker-archive tarball at
// dest: manifest.json, repositories, the config and the layers as the
// registry serves them (docker and podman load decompress them), each
// blob verified as it is copied in. The tarball is written beside dest
// and renamed into place only when every blob verified.
func pullArchive(ctx context.Context, c *registry.Client, ref registry.Reference, dest string, po pullOptions, e *env) (oci.Ref, error) {
	p := oci.DefaultPlatform()
	if len(po.platforms) == 1 {
		p = po.platforms[0]
	}
	top, _, err := readTop(ctx, c, ref, pullOptions{timeout: po.timeout})
	if err != nil {
		return nil, err
	}
	img, err := oci.ImageForPlatform(ctx, top, p)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	prog := newProgress(e.stderr, po.quiet)
	defer prog.stop()
	if err := writeDockerArchive(ctx, tmp, img, archiveRepoTag(ref), prog.update); err != nil {
		return nil, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return nil, err
	}
	prog.stop()
	if !po.quiet {
		fmt.Fprintf(e.stderr, "pulled %s (%s)\n  %s into the docker-archive %s\n", ref, oci.PlatformString(p), prog.summary(), dest)
	}
	fmt.Fprintln(e.stdout, img.Digest())
	return img, nil
}

// archiveRepoTag is the name docker load gives the image: the reference
// as Docker writes it (Docker Hub's names short), or none for a pull by
// digest alone.
func archiveRepoTag(ref registry.Reference) string {
	if ref.Tag == "" {
		return ""
	}
	name := ref.Host + "/" + ref.Repository
	if ref.Host == "registry-1.docker.io" || ref.Host == "docker.io" || ref.Host == "index.docker.io" {
		name = strings.TrimPrefix(ref.Repository, "library/")
	}
	return name + ":" + ref.Tag
}

// writeDockerArchive writes img as a docker-archive to w.
func writeDockerArchive(ctx context.Context, w io.Writer, img *oci.Image, repoTag string, progress func(oci.BlobProgress)) error {
	tw := tar.NewWriter(w)
	blobPath := func(d v1.Descriptor) string {
		return "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
	}
	m := dockerArchiveManifest{Config: blobPath(img.Config()), RepoTags: []string{}}
	if repoTag != "" {
		m.RepoTags = []string{repoTag}
	}
	now := time.Unix(0, 0)
	dirs := map[string]bool{}
	written := map[string]bool{}
	for i, d := range append([]v1.Descriptor{img.Config()}, img.Layers()...) {
		if i > 0 {
			m.Layers = append(m.Layers, blobPath(d))
		}
		if written[blobPath(d)] {
			continue // a layer listed twice is stored once
		}
		written[blobPath(d)] = true
		dir := "blobs/" + d.Digest.Algorithm().String() + "/"
		for _, p := range []string{"blobs/", dir} {
			if !dirs[p] {
				dirs[p] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: 0o755, ModTime: now}); err != nil {
					return err
				}
			}
		}
		if err := copyBlobToTar(ctx, tw, img, d, blobPath(d), now, progress); err != nil {
			return err
		}
	}
	mj, err := json.Marshal([]dockerArchiveManifest{m})
	if err != nil {
		return err
	}
	files := []struct {
		name string
		body []byte
	}{{"manifest.json", mj}}
	if repoTag != "" && len(img.Layers()) > 0 {
		i := strings.LastIndexByte(repoTag, ':')
		top := img.Layers()[len(img.Layers())-1].Digest.Encoded()
		repos, err := json.Marshal(map[string]map[string]string{repoTag[:i]: {repoTag[i+1:]: top}})
		if err != nil {
			return err
		}
		files = append(files, struct {
			name string
			body []byte
		}{"repositories", repos})
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Size: int64(len(f.body)), Mode: 0o644, ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyBlobToTar adds one blob, read through a verifying reader: a blob
// that does not match its digest fails the archive.
func copyBlobToTar(ctx context.Context, tw *tar.Writer, img *oci.Image, d v1.Descriptor, name string, now time.Time, progress func(oci.BlobProgress)) error {
	rc, err := img.OpenBlob(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: d.Size, Mode: 0o644, ModTime: now}); err != nil {
		return err
	}
	cw := &countingWriter{w: tw, report: func(n int64) { progress(oci.BlobProgress{Descriptor: d, Complete: n}) }}
	if _, err := io.Copy(cw, rc); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	progress(oci.BlobProgress{Descriptor: d, Complete: d.Size, Done: true})
	return nil
}

type countingWriter struct {
	w      io.Writer
	n      int64
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.report(c.n)
	return n, err
}
