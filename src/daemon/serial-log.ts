// A VM's serial console log on disk (serial.log), rotated to serial.log.1 at a size limit so a
// chatty guest cannot fill the disk: at most twice the limit is kept.

import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';

export class SerialLog {
  private fd: number;
  private size: number;

  constructor(private readonly path: string, private readonly maxBytes: number) {
    this.fd = openSync(path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  append(data: Uint8Array): void {
    let off = 0;
    while (off < data.length) {
      if (this.size >= this.maxBytes) this.rotate();
      const n = Math.min(data.length - off, this.maxBytes - this.size);
      writeSync(this.fd, data, off, n);
      off += n;
      this.size += n;
    }
  }

  private rotate(): void {
    closeSync(this.fd);
    renameSync(this.path, `${this.path}.1`);
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = 0;
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Everything kept, oldest first. */
  static readAll(path: string): Buffer {
    const parts: Buffer[] = [];
    if (existsSync(`${path}.1`)) parts.push(readFileSync(`${path}.1`));
    if (existsSync(path)) parts.push(readFileSync(path));
    return Buffer.concat(parts);
  }
}
