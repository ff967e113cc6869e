// Package oci is the data model shared by the registry client, the
// in-memory registry server and the on-disk OCI image layout.
//
// A [Ref] is one manifest: its exact bytes, the digest of those bytes and its
// media type. [Image] (an OCI image manifest or a Docker schema-2 manifest)
// and [Index] (an OCI image index or a Docker manifest list) implement it.
// Refs are built by [NewRef], which parses and validates the raw bytes, and
// they are lazy: blobs and child manifests are fetched from the ref's
// [Source] only when asked for, and every byte fetched is verified against
// the digest and size of the descriptor that named it.
//
// No ref stores a context: every read through a ref ([Index.Child],
// [Image.OpenBlob], [Image.ReadConfig], [Walk], [Layout.Write]) takes the
// context that governs it, so a ref outlives the context it was read under.
//
// A [Layout] is an OCI image layout directory. Nothing under it is trusted to
// be what its name says: files are opened without following symlinks or
// blocking on FIFOs and must be regular files, and served blobs are verified
// before they are first served ([ErrNotRegular] for what is refused).
package oci
