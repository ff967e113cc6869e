package oci

import (
	"context"
	"os"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteBlob lands the one blob desc names, read from src, in the layout,
// as [Layout.Write] lands each blob of a ref: skipped when present and
// verified; else downloaded into blobs/<alg>/<encoded>.partial (resumed
// from a partial left earlier when src is a [RangeSource]), verified
// against desc (the whole content, prefix included) and renamed into
// place. Content with embedded data (desc.Data, as for a manifest held in
// memory) is written directly. Writers of the same blob, in this process
// or others, land it once; the others wait for it (as long as ctx allows)
// and then skip it.
//
// progress, when not nil, is told how many bytes are on disk in the
// .partial file as they land, in order (so another reader may follow the
// file up to that length with [Layout.OpenPartial]), and when the blob is
// done or skipped. A download that fails verification leaves nothing.
func (l *Layout) WriteBlob(ctx context.Context, src Source, desc v1.Descriptor, progress func(BlobProgress)) error {
	if err := ValidateDescriptor(desc); err != nil {
		return err
	}
	l.blobMu.Lock()
	if l.pipelines == nil {
		l.pipelines = make(chan struct{}, maxPipelines)
	}
	pipelines := l.pipelines
	l.blobMu.Unlock()
	// Not durable: the cache verifies a stored blob before its first
	// serve after a restart (see placeLanded). Large blobs land with
	// direct I/O where the filesystem allows it (see landing.go).
	return l.writeBlob(ctx, src, desc, progress, landOptions{pipelines: pipelines, direct: true})
}

// OpenPartial opens the .partial file of d read-only, to follow a landing
// in progress (see [Layout.WriteBlob]): only a regular file inside the
// layout is opened ([ErrNotRegular] otherwise). The bytes in it are not
// verified until the landing completes.
func (l *Layout) OpenPartial(d digest.Digest) (*os.File, error) {
	if err := ValidateDigest(d); err != nil {
		return nil, err
	}
	if err := l.checkBlobDir(d); err != nil {
		return nil, err
	}
	return l.fs.openRegular(blobRel(d)+".partial", os.O_RDONLY)
}

// SetTag points the index.json entry name (the
// org.opencontainers.image.ref.name annotation) at desc, replacing an
// entry of the same name and keeping the others. index.json is rewritten
// atomically under the directory's lock.
func (l *Layout) SetTag(ctx context.Context, name string, desc v1.Descriptor) error {
	if err := ValidateDescriptor(desc); err != nil {
		return err
	}
	return l.addToIndex(ctx, desc, name, "", nil)
}
