// The text the Linux guest's programs work on in `npm run bench` (the bench-data disk): lines of
// words drawn with Zipf's law from a fixed vocabulary, numbers and punctuation, from a fixed seed,
// so every run and both emulators see the same bytes and the programs' results can be compared.

const SYLLABLES = ['ka', 'to', 're', 'mi', 'sun', 'de', 'lo', 'var', 'pe', 'an', 'bri', 'cho', 'el', 'fu', 'gan', 'hu',
  'is', 'jo', 'ku', 'len', 'mo', 'ne', 'or', 'pla', 'qui', 'ra', 'st', 'ti', 'ul', 've', 'wy', 'xe', 'yo', 'zi'];
const VOCABULARY = 3000;

/** `bytes` bytes of text (a whole number of lines when bytes allows). */
export function benchText(bytes: number): Buffer {
  let s = 0x2545f491; // xorshift32
  const rand = (): number => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; return (s >>> 0) / 4294967296; };
  const words: string[] = [];
  for (let i = 0; i < VOCABULARY; i++) {
    let w = '';
    const n = 1 + Math.floor(rand() * 3.2);
    for (let k = 0; k < n; k++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    words.push(w);
  }
  const out = Buffer.alloc(bytes, 0x0a);
  let o = 0;
  while (o < bytes) {
    const tokens = 3 + Math.floor(rand() * 12);
    let line = rand() < 0.1 ? '    ' : '';
    for (let t = 0; t < tokens; t++) {
      if (t > 0) line += ' ';
      const u = rand();
      if (u < 0.05) line += String(Math.floor(rand() * 10000));
      else {
        // Zipf: rank r with probability ~ 1/r (log-uniform rank).
        const r = Math.min(VOCABULARY - 1, Math.floor(Math.exp(rand() * Math.log(VOCABULARY + 1))) - 1);
        line += words[r];
        if (u > 0.93) line += u > 0.97 ? '.' : ',';
      }
    }
    line += '\n';
    o += out.write(line, o, 'latin1');
  }
  out[bytes - 1] = 0x0a;
  return out;
}
