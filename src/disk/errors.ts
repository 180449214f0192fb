// Errors from the disk layer. `code` lets the CLI and daemon pick an exit code or error class
// without parsing messages; the message says what to do about it.

export type DiskErrorCode =
  | 'NOT_FOUND'    // no such image
  | 'EXISTS'       // refusing to overwrite
  | 'INVALID'      // bad size, not a regular file, an operation the format does not allow
  | 'SHRINK'       // shrinking without --shrink
  | 'IN_USE'       // held by another running VM (lock)
  | 'READONLY'     // write to a read-only attachment
  | 'CORRUPT'      // a damaged image (qcow2 header or tables), or a backing chain that loops
  | 'UNSUPPORTED'  // an image feature vmctl does not implement (named in the message)
  | 'IO';          // the host said no

export class DiskError extends Error {
  constructor(readonly code: DiskErrorCode, message: string) {
    super(message);
    this.name = 'DiskError';
  }
}
