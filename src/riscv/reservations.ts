// LR/SC reservations shared by all harts of one machine.
//
// Unprivileged spec, "A" extension (Zalrsc): an SC must fail if a store from another hart to the
// reservation set can be observed between the LR and the SC. The board creates ONE
// ReservationSet per machine and passes it to every Hart constructor; each hart registers its
// reservation here (physical address), and every store a hart makes while any reservation is
// active calls `storeBy`, which breaks the other harts' reservations on that granule.
// `active` lets the store fast path skip the call entirely when nobody holds a reservation.

/** Reservation granule: an aligned doubleword (covers LR.W and LR.D). */
export const RESERVATION_GRANULE = 8;

export class ReservationSet {
  /** Number of harts currently holding a reservation (checked on every store fast path). */
  active = 0;
  /** Physical address reserved by each hart id (index), -1 = none. */
  private readonly addr: number[] = [];

  /** Records hart `hartId`'s reservation on physical address `pa` (exact LR address). */
  set(hartId: number, pa: number): void {
    while (this.addr.length <= hartId) this.addr.push(-1);
    if (this.addr[hartId] < 0) this.active++;
    this.addr[hartId] = pa;
  }

  /** The address `hartId` has reserved, or -1. */
  get(hartId: number): number {
    return hartId < this.addr.length ? this.addr[hartId] : -1;
  }

  clear(hartId: number): void {
    if (hartId < this.addr.length && this.addr[hartId] >= 0) {
      this.addr[hartId] = -1;
      this.active--;
    }
  }

  /** A store of `size` bytes at physical `pa` by `hartId`: breaks other harts' reservations on that granule. */
  storeBy(hartId: number, pa: number, size: number): void {
    const g0 = pa - (pa % RESERVATION_GRANULE);
    const g1 = pa + size;
    for (let h = 0; h < this.addr.length; h++) {
      const r = this.addr[h];
      if (h === hartId || r < 0) continue;
      const rg = r - (r % RESERVATION_GRANULE);
      if (rg < g1 && g0 < rg + RESERVATION_GRANULE) { this.addr[h] = -1; this.active--; }
    }
  }
}
