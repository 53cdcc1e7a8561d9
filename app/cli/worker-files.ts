// How a worker thread reaches the files of a run: by path, with its own file descriptors, reading
// straight into and writing straight from its WASM memory (positional, synchronous: a worker runs
// one unit at a time and has nothing else to do meanwhile).
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { MoeError } from '../engine/io.ts';
import type { FileRef, WorkerFiles } from '../engine/kernels/bridge.ts';
import { ioReason } from './node-io.ts';

/**
 * The most one write system call is given. Buffered writes to a file hold its inode lock for the
 * whole call, and on Linux a second writer of the same file spins on that lock while the holder
 * runs: with two workers writing 8–16 MiB copies into one shard, writing took 2–2.5× as long as in
 * 2 MiB calls, most of it system time (a fused-expert merge, `npm run bench -- --only fused`; 4 MiB
 * was already slower, 1 MiB no faster). The studio's 16 MiB writes through sync access handles
 * showed no such difference (its workers mostly wait for File slices), so it writes as it did.
 */
const WRITE_CHUNK = 2 << 20;

export class NodeWorkerFiles implements WorkerFiles {
  private readonly refs = new Map<number, { path: string; write: boolean }>();
  private readonly fds = new Map<number, number>();

  open(refs: FileRef[]): void {
    for (const r of refs) if (typeof r.ref === 'string') this.refs.set(r.id, { path: r.ref, write: r.write });
  }

  close(ids: number[]): void {
    for (const id of ids) {
      const fd = this.fds.get(id);
      if (fd !== undefined) {
        this.fds.delete(id);
        // No fsync here: the coordinator's close flushes the file (its descriptor, opened before
        // ours, flushes every dirty page of the file and sees any write-back error), off this
        // thread, while this worker computes the next shard.
        closeSync(fd);
      }
      this.refs.delete(id);
    }
  }

  private fd(id: number): { fd: number; path: string } {
    const ref = this.refs.get(id);
    if (!ref) throw new Error(`internal: file ${id} was not opened in this worker`);
    let fd = this.fds.get(id);
    if (fd === undefined) {
      try {
        fd = openSync(ref.path, ref.write ? 'r+' : 'r');
      } catch (e) {
        throw new MoeError(`cannot open: ${ioReason(e)}`, ref.path);
      }
      this.fds.set(id, fd);
    }
    return { fd, path: ref.path };
  }

  read(file: number, offset: number, length: number, dst: () => Uint8Array): void {
    const { fd, path } = this.fd(file);
    const buf = dst();
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = readSync(fd, buf, done, length - done, offset + done);
      } catch (e) {
        throw new MoeError(`read failed: ${ioReason(e)}`, path);
      }
      if (n === 0) throw new MoeError(`file ended at ${offset + done} while reading [${offset}, ${offset + length}) (was it truncated?)`, path);
      done += n;
    }
  }

  write(file: number, offset: number, src: Uint8Array): boolean {
    const { fd, path } = this.fd(file);
    let done = 0;
    while (done < src.length) {
      let n: number;
      try {
        n = writeSync(fd, src, done, Math.min(src.length - done, WRITE_CHUNK), offset + done);
      } catch (e) {
        throw new MoeError(`write failed: ${ioReason(e)}`, path);
      }
      if (n <= 0) throw new MoeError('write made no progress (disk full?)', path);
      done += n;
    }
    return true;
  }
}
