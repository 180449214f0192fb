// The version shown by `vmctl --version` and the daemon's greeting.
export const VERSION = '0.1.0';
