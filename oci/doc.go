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
// The context a ref was created with is stored in it and governs every later
// read made through the ref and its children (see [NewRef]). Methods that take
// a context of their own say so.
package oci
