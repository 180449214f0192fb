// LR/SC reservations shared by all harts of one machine, also across threads.
//
// Unprivileged spec, "A" extension (Zalrsc): an SC must fail if a store from another hart to the
// reservation set can be observed between the LR and the SC. The board creates ONE
// ReservationSet per machine (over shared memory when harts run on several threads) and passes it
// to every Hart; each hart publishes the granule it reserved here, and every store a hart makes
// while any reservation is active calls `storeBy`, which breaks the other harts' reservations on
// that granule. `active[0]` lets the store fast path skip the call entirely when nobody holds a
// reservation. SC itself is a compare-and-swap against the value LR loaded (hart.ts), so it is
// atomic whatever the timing; the table makes it fail also when another hart stored the same
// value in between (docs/guest-ram.md).

/** Reservation granule: an aligned doubleword (covers LR.W and LR.D). */
export const RESERVATION_GRANULE = 8;
const NONE = -1;

export class ReservationSet {
  /** [0]: number of harts holding a reservation (read on every store fast path). */
  readonly active: Int32Array;
  /** Reserved granule (physical address / 8, as uint32 bits) per hart id, NONE = none. */
  private readonly granule: Int32Array;

  /** The shared memory the set lives in: translated wasm code reads `active` there (it is a
   *  WebAssembly.Memory so that wasm code can import it; wasm/translate.ts). */
  readonly memory: WebAssembly.Memory;

  /** `memory`: from another ReservationSet (`.memory`), to share the set across threads. */
  constructor(readonly harts = 8, memory?: WebAssembly.Memory) {
    const m = memory ?? new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    this.memory = m;
    const b = m.buffer;
    this.active = new Int32Array(b, 0, 1);
    this.granule = new Int32Array(b, 4, harts);
    if (!memory) this.granule.fill(NONE);
  }

  /** Records hart `hartId`'s reservation on physical address `pa`. */
  set(hartId: number, pa: number): void {
    const g = (pa / RESERVATION_GRANULE) | 0;
    if (Atomics.exchange(this.granule, hartId, g) === NONE) Atomics.add(this.active, 0, 1);
  }

  /** Ends hart `hartId`'s reservation; true when it still held one on `pa`'s granule (nobody
   *  broke it since `set`). */
  take(hartId: number, pa: number): boolean {
    const old = Atomics.exchange(this.granule, hartId, NONE);
    if (old === NONE) return false;
    Atomics.sub(this.active, 0, 1);
    return old === ((pa / RESERVATION_GRANULE) | 0);
  }

  /** Does hart `hartId` hold a reservation? */
  holds(hartId: number): boolean {
    return Atomics.load(this.granule, hartId) !== NONE;
  }

  clear(hartId: number): void {
    if (Atomics.exchange(this.granule, hartId, NONE) !== NONE) Atomics.sub(this.active, 0, 1);
  }

  /** A store of `size` bytes at physical `pa` by `hartId`: breaks other harts' reservations on
   *  the granules it covers. */
  storeBy(hartId: number, pa: number, size: number): void {
    const g0 = (pa / RESERVATION_GRANULE) >>> 0;
    const g1 = ((pa + size - 1) / RESERVATION_GRANULE) >>> 0;
    for (let h = 0; h < this.harts; h++) {
      if (h === hartId) continue;
      const r = this.granule[h];
      if (r === NONE) continue;
      const u = r >>> 0;
      if (u >= g0 && u <= g1 && Atomics.compareExchange(this.granule, h, r, NONE) === r) Atomics.sub(this.active, 0, 1);
    }
  }
}
