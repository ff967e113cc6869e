package oci

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// A large blob is landed in its .partial file by three goroutines
// (landPipelined): one reads the stream, one hashes, one writes, so
// writing overlaps the hashing of what follows and the download runs at
// the speed of SHA-256.
//
// Large blobs are written with direct I/O where the filesystem supports it
// (Linux: ext4, XFS, Btrfs, F2FS): the bytes go from the pipeline's ring
// to the disk without a copy into the page cache. What cannot go direct (a
// blob's unaligned tail, a resumed landing, a small blob, another
// filesystem) goes through the page cache.
//
// A durable landing (Layout.Write) is made durable explicitly before it
// is renamed into place: fdatasync, then the rename, then an fsync of the
// directory. Its writes through the page cache get write-behind (on
// Linux, writeback of each batch is started as it is written, and 64 MiB
// behind the writer the pages are waited for and dropped, so dirty pages
// never pile up and the final fdatasync has little left to do). Measured
// on this project's 2-core VM (BenchmarkLandingDurability, BENCHMARKS.md,
// session 8): direct I/O and fdatasync land 1 GiB in 0.80x the time of
// write-behind and 0.24x that of buffered writes with one fdatasync, and
// spend far less CPU (no copy into the page cache), which the cache and
// its clients share. (Session 7 measured write-behind faster on the same
// kind of VM; the figures it rested on no longer reproduce.)
//
// The cache's landing (Layout.WriteBlob) is not made durable: a blob a
// crash garbled is found when it is verified before its first serve after
// a restart. Its followers in the same process get the newest bytes from
// memory (BlobProgress.Landed); others read the file.
const (
	// pipelineMinSize is the smallest blob landed through the pipeline;
	// smaller ones are copied by one goroutine with [VerifyReader.WriteTo].
	pipelineMinSize = 8 << 20
	// pipelineSlots is how many copyBufferSize slots the pipeline's ring
	// has: 16 MiB of slack lets the writer ride out the disk's latency and
	// write several slots at once when it falls behind.
	pipelineSlots = 16
	// maxPipelines is how many blobs of one [Layout.Write] land through the
	// pipeline at once, bounding its memory to 32 MiB; other large blobs in
	// flight take the one-goroutine path, and with several blobs in flight
	// the cores are busy anyway.
	maxPipelines = 2
	// writeBehindBatch is how much is written before writeback of it is
	// started; writeBehindWindow is how far behind the writer pages are
	// waited for and dropped from the page cache.
	writeBehindBatch  = 8 << 20
	writeBehindWindow = 64 << 20
	// directAlign is the alignment direct writes need: of their file
	// offset, length and memory. 4096 satisfies 512-byte and 4 KiB sectors.
	directAlign = 4096
)

// landing is the .partial file a blob is written into. Bytes arrive in
// stream order with their position in the blob; the first skip bytes are
// already on disk from an earlier attempt (re-read only to be hashed) and
// are dropped.
type landing struct {
	f      *os.File
	skip   int64
	report func(BlobProgress)
	// behind, when set, starts writeback as the landing goes (a durable
	// landing); its errors are the final fdatasync's to report.
	behind *writeBehind
	// direct says f has O_DIRECT set: only aligned writes go to it; the
	// first write that is not aligned turns it off for good (see write).
	direct bool
}

// write stores p, the blob's bytes from position pos.
func (l *landing) write(p []byte, pos int64) error {
	if pos < l.skip {
		k := l.skip - pos
		if k > int64(len(p)) {
			k = int64(len(p))
		}
		p, pos = p[k:], pos+k
	}
	if len(p) == 0 {
		return nil
	}
	end, landed := pos+int64(len(p)), p
	direct := l.direct
	if direct {
		if err := l.writeDirect(p, pos); err != nil {
			return err
		}
	} else if _, err := l.f.WriteAt(p, pos); err != nil {
		return err
	}
	if l.behind != nil && !direct {
		l.behind.wrote(l.f, end)
	}
	l.report(BlobProgress{Complete: end, Landed: landed})
	return nil
}

// writeDirect writes p at pos on a landing with O_DIRECT set: its aligned
// part directly, the rest (a blob's unaligned tail, or a write that does
// not start aligned, as after a resume) through the page cache once
// O_DIRECT is off. A filesystem that takes the flag but refuses the write
// (EINVAL) gets buffered writes from then on.
func (l *landing) writeDirect(p []byte, pos int64) error {
	aligned := pos%directAlign == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
	if n := len(p) / directAlign * directAlign; aligned && n > 0 {
		_, err := l.f.WriteAt(p[:n], pos)
		switch {
		case err == nil:
			p, pos = p[n:], pos+int64(n)
		case !errors.Is(err, syscall.EINVAL):
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	if !setDirect(l.f, false) {
		return fmt.Errorf("%s: turning direct I/O off failed", l.f.Name())
	}
	l.direct = false
	_, err := l.f.WriteAt(p, pos)
	return err
}

// close closes the file.
func (l *landing) close() error { return l.f.Close() }

// writeBehind tracks a durable landing's writeback: bytes before started
// have had writeback started, bytes before dropped are on disk and out of
// the page cache.
type writeBehind struct {
	started, dropped int64
}

// wrote is told that the file now holds bytes up to end, written in order.
func (w *writeBehind) wrote(f *os.File, end int64) {
	if end-w.started < writeBehindBatch {
		return
	}
	startWriteback(f, w.started, end-w.started)
	w.started = end
	if to := w.started - writeBehindWindow; to-w.dropped >= writeBehindBatch {
		waitAndDrop(f, w.dropped, to-w.dropped)
		w.dropped = to
	}
}

// landingWriter adapts a landing to [io.Writer] for the single-goroutine
// path: unaligned memory, positions counted from zero.
type landingWriter struct {
	l   *landing
	pos int64
}

func (w *landingWriter) Write(p []byte) (int, error) {
	if err := w.l.write(p, w.pos); err != nil {
		return 0, err
	}
	w.pos += int64(len(p))
	return len(p), nil
}

// landPipelined lands vr's content in l through three goroutines that
// pass slots of one ring buffer on: one reads the underlying stream into
// full slots, the caller's verifies them (hash, size, digest: the rules of
// [VerifyReader]), and one writes them, several adjacent slots in one call
// when they are ready together. With a core for each the download is as
// fast as the slowest of the three, which is SHA-256, instead of their
// sum. The last slot is written only once the digest matched. On the first
// failure the others stop and abort is called (it cancels the read); the
// function returns only once every goroutine has, with nil only when every
// byte was verified and written.
// chunk is one slot of the landing ring on its way from reader to writer.
type chunk struct {
	slot int
	n    int
	pos  int64 // of the slot's first byte in the blob
	err  error // the read's error, io.EOF if the stream ended
}

// gatherAdjacent takes along the chunks already waiting in verified that
// continue c both in the ring and in the file, so they go out in one
// write; it returns how many slots that makes, where they end in the file,
// and a chunk it took that does not continue them (to be written next).
func gatherAdjacent(c chunk, verified <-chan chunk, slotSize int) (slots int, end int64, carried *chunk) {
	slots, end = 1, c.pos+int64(c.n)
	for c.slot+slots < pipelineSlots && end-c.pos == int64(slots*slotSize) {
		select {
		case d, ok := <-verified:
			if !ok {
				return slots, end, nil
			}
			if d.slot != c.slot+slots || d.pos != end {
				return slots, end, &d
			}
			slots, end = slots+1, end+int64(d.n)
		default:
			return slots, end, nil
		}
	}
	return slots, end, nil
}

func landPipelined(l *landing, vr *VerifyReader, abort func(), direct bool) error {
	const slotSize = copyBufferSize
	ring, release := pipelineMemory(pipelineSlots * slotSize)
	defer release()
	// A resumed landing reads its prefix back through f, which direct I/O
	// would refuse (unaligned reads): it goes through the page cache.
	if direct && l.skip == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(ring)))%directAlign == 0 {
		l.direct = setDirect(l.f, true)
		defer func() {
			if l.direct {
				setDirect(l.f, false)
				l.direct = false
			}
		}()
	}
	slot := func(i, n int) []byte { return ring[i*slotSize : i*slotSize+n] }
	// Each channel can hold every slot, so a send to one never blocks.
	free := make(chan int, pipelineSlots)
	for i := 0; i < pipelineSlots; i++ {
		free <- i
	}
	fetched := make(chan chunk, pipelineSlots)
	verified := make(chan chunk, pipelineSlots)
	stop := make(chan struct{})
	var stopOnce sync.Once
	fail := func() { stopOnce.Do(func() { close(stop); abort() }) }

	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		defer close(fetched)
		pos, want := vr.n, vr.desc.Size-vr.n
		for want > 0 {
			var i int
			select {
			case i = <-free:
			case <-stop:
				return
			}
			n, err := io.ReadFull(vr.r, slot(i, int(min(slotSize, want))))
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			fetched <- chunk{i, n, pos, err}
			if err != nil {
				return
			}
			pos, want = pos+int64(n), want-int64(n)
		}
	}()

	var werr error
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		var carried *chunk
		for {
			var c chunk
			if carried != nil {
				c, carried = *carried, nil
			} else if next, ok := <-verified; ok {
				c = next
			} else {
				return
			}
			// Take along the chunks already waiting that continue this
			// one both in the ring and in the file.
			var slots int
			var end int64
			slots, end, carried = gatherAdjacent(c, verified, slotSize)
			if werr == nil {
				if werr = l.write(ring[c.slot*slotSize:c.slot*slotSize+int(end-c.pos)], c.pos); werr != nil {
					fail()
				}
			}
			for i := 0; i < slots; i++ {
				free <- c.slot + i
			}
		}
	}()

	var verr error
	for c := range fetched {
		n, err := vr.accept(slot(c.slot, c.n), c.err)
		if n > 0 {
			verified <- chunk{slot: c.slot, n: n, pos: c.pos}
		} else {
			free <- c.slot
		}
		if err != nil {
			verr = err
			fail()
			break
		}
		if c.err != nil {
			break
		}
	}
	close(verified)
	<-writeDone
	<-fetchDone
	switch {
	case werr != nil:
		return werr
	case verr != nil:
		return verr
	case !vr.verified():
		// The read stopped early: the writer failed, reported above.
		return fmt.Errorf("blob %s: landing stopped after %d of %d bytes", vr.desc.Digest, vr.n, vr.desc.Size)
	}
	return nil
}
