// The client side of the protocol: one connection, request/reply by id, events to a listener.

import { connect, type Socket } from 'node:net';
import { encodeFrame, LineDecoder, MAX_LINE_BYTES } from './framing.js';
import { PROTOCOL_VERSION, ProtocolFailure, type EventMessage, type Greeting, type MethodName, type Reply } from './messages.js';

/** Replies can be large (`vm.log` carries the serial log); the daemon is trusted more than its clients. */
const MAX_REPLY_LINE_BYTES = 256 * 1024 * 1024;

interface Pending { resolve: (v: unknown) => void; reject: (e: Error) => void }

export class ProtocolClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private eventListeners: ((e: EventMessage) => void)[] = [];
  private closeListeners: (() => void)[] = [];
  private closed = false;
  greeting: Greeting['hello'] | null = null;

  private constructor(private readonly sock: Socket) {}

  /** Connects, reads the greeting and says hello. Rejects with the socket error (ENOENT, ECONNREFUSED, ...). */
  static connect(path: string, timeoutMs = 5000): Promise<ProtocolClient> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      const client = new ProtocolClient(sock);
      let settled = false;
      const timer = setTimeout(() => fail(Object.assign(new Error(`no greeting from the daemon within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        reject(e);
      };
      sock.once('error', fail);
      const decoder = new LineDecoder(MAX_REPLY_LINE_BYTES, (f) => {
        if (!f.ok) {
          fail(new ProtocolFailure('ProtocolError', `daemon sent ${f.detail}`));
          return;
        }
        if (!client.greeting) {
          const g = f.value as Greeting;
          if (!g || typeof g !== 'object' || !g.hello || typeof g.hello.protocol !== 'number') {
            fail(new ProtocolFailure('ProtocolError', 'the daemon did not greet with a hello'));
            return;
          }
          client.greeting = g.hello;
          client.request('hello', { protocol: PROTOCOL_VERSION, client: 'vmctl' }).then(() => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            sock.off('error', fail);
            sock.on('error', () => { /* reported through close */ });
            resolve(client);
          }, fail);
          return;
        }
        client.dispatch(f.value);
      });
      sock.on('data', (b) => decoder.push(b));
      sock.on('close', () => {
        client.closed = true;
        const err = new ProtocolFailure('Internal', 'the daemon closed the connection');
        for (const p of client.pending.values()) p.reject(err);
        client.pending.clear();
        if (!settled) fail(err);
        for (const l of client.closeListeners) l();
      });
    });
  }

  private dispatch(v: unknown): void {
    const m = v as Reply & Partial<EventMessage>;
    if (m && typeof m === 'object' && typeof m.event === 'string') {
      for (const l of this.eventListeners) l(m as EventMessage);
      return;
    }
    if (m && typeof m === 'object' && m.id === null && m.error) {
      // The daemon could not tell which request this answers (it could not read one): every
      // request still waiting is failed with it rather than left waiting for ever.
      const err = new ProtocolFailure(m.error.class, m.error.message);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      return;
    }
    if (!m || typeof m !== 'object' || typeof m.id !== 'number') return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.error) p.reject(new ProtocolFailure(m.error.class, m.error.message));
    else p.resolve(m.result);
  }

  request<T = unknown>(method: MethodName, params: Record<string, unknown> = {}): Promise<T> {
    if (this.closed) return Promise.reject(new ProtocolFailure('Internal', 'the connection to the daemon is closed'));
    const id = this.nextId++;
    const frame = encodeFrame({ id, method, params });
    const bytes = Buffer.byteLength(frame);
    if (bytes > MAX_LINE_BYTES) {
      return Promise.reject(new ProtocolFailure('InvalidParams', `${method}: the request is ${bytes} bytes, more than the ${MAX_LINE_BYTES} bytes the daemon accepts in one message`));
    }
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.sock.write(frame);
    });
  }

  /** Stops reading from the daemon (back-pressure: our own output is full); the daemon then holds
   *  back the VMs this client runs (see Connection.send). */
  pause(): void {
    this.sock.pause();
  }

  resume(): void {
    this.sock.resume();
  }

  onEvent(fn: (e: EventMessage) => void): void {
    this.eventListeners.push(fn);
  }

  onClose(fn: () => void): void {
    this.closeListeners.push(fn);
  }

  close(): void {
    this.closed = true;
    this.sock.end();
    this.sock.destroy();
  }
}
