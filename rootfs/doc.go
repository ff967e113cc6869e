// Package rootfs makes an image's root filesystem from its layers, as the
// container runtimes do (image-spec, "Image Layer Filesystem Changeset"):
// [Unpack] writes it into a directory, [Flatten] writes it as one tar
// stream. Layers are applied in order; whiteouts (".wh.<name>") remove
// what lower layers hold, opaque markers (".wh..wh..opq") empty a
// directory of it; hardlinks are kept, and resolved so that every link
// in the output points at content present in the output; symlinks are
// kept as links (absolute targets too) and never followed.
//
// What it guarantees, whatever the layers contain:
//
//   - Nothing outside the target is created, opened or changed: every
//     file operation goes through an [os.Root] on the target directory
//     (for Flatten, a private temporary directory), so "../" names,
//     absolute names, links out and symlinks to "/etc" followed by
//     "link/passwd" fail or stay inside by construction. Names are
//     cleaned against the root; a name that would climb out of it, an
//     entry below a symlink, a whiteout of the root, "." or ".." or a
//     bare ".wh.", and a hardlink to a path outside or absent are errors
//     ([ErrUnsafeEntry]) naming the layer and the entry.
//   - Every layer is verified: its digest as it is read, and its
//     uncompressed content against the config's diff_id.
//   - Memory is bounded by the number of paths, not the bytes; the number
//     of entries, the length and depth of a path are capped
//     ([Options.MaxEntries]); the tar reader caps PAX records.
//   - Layers are gzip or uncompressed; zstd and others come through a
//     decompressor the caller registers for the media type
//     ([Options.Decompressors]). An unregistered media type is an error
//     naming it ([ErrUnsupportedLayer]), never garbage.
//
// Duplicate entries in one layer: the last wins, as in the runtimes.
package rootfs
