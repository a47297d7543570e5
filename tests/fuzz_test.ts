// A seeded fuzz test. Valid requests are mutated; every
// answer must be one of the documented shapes (a health report, an error
// object, an HTTP response carrying one, or a plain close), every connection
// must end, and after each batch the server must answer a normal probe with
// no connection left open.
//
// HEALTHSOCK_FUZZ_CASES sets the number of cases (default 50000, under half a
// minute on two busy cores). The seed is fixed, so a failure names a case
// that replays identically.
import assert from "node:assert/strict";
import { isDisconnect } from "../connection.ts";
import { Health } from "../health.ts";
import { serve } from "../serve.ts";
import { tempSocket } from "./_util.ts";
import { watchRejections } from "./_guard.ts";
import { assertServes, assertServesHttp, concat, decoder, encoder, Random, waitUntil } from "./fixtures/hardening.ts";

const SEED = 0x4ea1_7450;
const CASES = Number(Deno.env.get("HEALTHSOCK_FUZZ_CASES") ?? 50_000);
if (!Number.isInteger(CASES) || CASES < 1) {
  throw new RangeError(
    `Invalid HEALTHSOCK_FUZZ_CASES "${Deno.env.get("HEALTHSOCK_FUZZ_CASES")}": expected a whole number`,
  );
}
const BATCH = 500;
const CONCURRENCY = 8;
/** A connection the server has not closed this long after our last byte has hung. */
const HANG_MS = 10_000;
const ERROR_CODES = new Set([400, 404, 405, 408, 413, 414, 431, 503, 505]);

const TARGETS = [
  "/healthz",
  "/livez",
  "/readyz",
  "/startupz",
  "/healthz/db",
  "/readyz/db",
  "/livez/cache",
  "/healthz?verbose",
  "/readyz?exclude=db",
  "/healthz?exclude=db&exclude=cache&verbose=1",
  "http://localhost/readyz",
  "/healthz/d%62",
];

/** The valid requests that mutations start from. */
function corpus(): Uint8Array[] {
  const out: string[] = [];
  for (const target of TARGETS) {
    out.push(`GET ${target}\n`, `GET ${target}`, `HEAD ${target}\r\n`);
    out.push(`GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    out.push(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    out.push(`HEAD ${target} HTTP/1.0\r\nUser-Agent: fuzz\r\n\r\n`);
    out.push(`GET ${target} HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /livez HTTP/1.1\r\n\r\n`);
  }
  out.push("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nAccept: */*\r\n\r\n");
  out.push(
    "GET /healthz HTTP/1.1\r\n\r\nHEAD /readyz HTTP/1.1\r\n\r\nGET /livez HTTP/1.1\r\nConnection: close\r\n\r\n",
  );
  return out.map((text) => encoder.encode(text));
}

const TOKENS = [
  " ",
  "\r\n",
  "\n",
  "\r",
  "\0",
  "\t",
  "%",
  "%2F",
  "%ZZ",
  "?",
  "&",
  "#",
  ":",
  "/",
  "//",
  "..",
  "HTTP/1.1",
  "HTTP/1.0",
  "HTTP/2.0",
  "GET",
  "HEAD",
  "POST",
  "get",
  "Content-Length: 5\r\n",
  "Content-Length: -1\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Connection: close\r\n",
  "Connection: keep-alive\r\n",
  " folded\r\n",
  "\r\n\r\n",
  "?verbose",
  "?exclude=",
  "\u00e9",
  "\ud83d\ude00",
].map((t) => encoder.encode(t));

/** One mutation of `input`; several are applied per case. */
function mutate(random: Random, input: Uint8Array, seeds: Uint8Array[]): Uint8Array {
  const at = random.int(input.length + 1);
  switch (random.int(10)) {
    case 0: { // flip bits of one byte
      if (input.length === 0) return input;
      const out = input.slice();
      out[random.int(out.length)] ^= 1 << random.int(8);
      return out;
    }
    case 1: // insert a random byte
      return concat(input.subarray(0, at), random.bytes(1), input.subarray(at));
    case 2: { // delete a run of bytes
      const n = 1 + random.int(4);
      return concat(input.subarray(0, at), input.subarray(at + n));
    }
    case 3: // insert a token
      return concat(input.subarray(0, at), random.pick(TOKENS), input.subarray(at));
    case 4: { // replace a byte with a token
      return concat(input.subarray(0, at), random.pick(TOKENS), input.subarray(at + 1));
    }
    case 5: // truncate
      return input.subarray(0, at);
    case 6: { // repeat a slice many times (long lines, many headers)
      const end = Math.min(input.length, at + 1 + random.int(8));
      const slice = input.subarray(at, end);
      const times = random.pick([2, 10, 100, 2000]);
      const parts = Array.from({ length: times }, () => slice);
      return concat(input.subarray(0, at), ...parts, input.subarray(end));
    }
    case 7: // splice in another request (pipelining, mixed framings)
      return concat(input.subarray(0, at), random.pick(seeds), input.subarray(at));
    case 8: { // swap the case of a letter
      const out = input.slice();
      const i = random.int(out.length || 1);
      if (/[A-Za-z]/.test(String.fromCharCode(out[i]))) out[i] ^= 0x20;
      return out;
    }
    default: // random bytes
      return concat(input.subarray(0, at), random.bytes(1 + random.int(16)), input.subarray(at));
  }
}

interface Case {
  index: number;
  bytes: Uint8Array;
  /** Half-close after writing; otherwise keep our side open and wait for the server's timeouts. */
  closeWrite: boolean;
  /** Write one byte at a time. */
  trickle: boolean;
}

function* generate(count: number): Generator<Case> {
  const random = new Random(SEED);
  const seeds = corpus();
  for (let index = 0; index < count; index++) {
    let bytes = random.pick(seeds);
    const rounds = random.pick([0, 1, 1, 1, 2, 2, 3, 5, 8]);
    for (let r = 0; r < rounds; r++) bytes = mutate(random, bytes, seeds);
    const closeWrite = random.next() > 0.02;
    const trickle = bytes.length < 64 && random.next() < 0.02;
    yield { index, bytes, closeWrite, trickle };
  }
}

/** Check that `bytes` is a documented answer: a close, a line-mode answer, or a sequence of HTTP responses. */
function judge(bytes: Uint8Array): string {
  if (bytes.length === 0) return "close";
  const text = decoder.decode(bytes);
  if (text.startsWith("HTTP/")) return judgeHttp(bytes);
  assert.ok(text.endsWith("\n"), "a line-mode answer ends with a newline");
  const body = text.slice(0, -1);
  if (body.startsWith("{")) {
    assert.ok(!body.includes("\n"), "a JSON answer is one line");
    judgeJson(JSON.parse(body), undefined);
    return "status" in JSON.parse(body) ? "line report" : "line error";
  }
  // The text's own final newline is line mode's: none is added to it.
  assert.match(
    body,
    /(^|\n)(healthz|livez|readyz|startupz) check (passed|passed with warnings|failed)$/,
    "verbose text",
  );
  return "line verbose";
}

function judgeJson(value: Record<string, unknown>, code: number | undefined): void {
  if ("status" in value) {
    assert.ok(["pass", "warn", "fail"].includes(value.status as string), `status ${value.status}`);
    assert.equal(typeof value.checks, "object");
    if (code !== undefined) assert.equal(code, value.status === "fail" ? 503 : 200);
    return;
  }
  assert.equal(typeof value.error, "string", "an error answer has an error message");
  assert.ok(ERROR_CODES.has(value.code as number), `error code ${value.code}`);
  if (code !== undefined) assert.equal(code, value.code, "the HTTP status matches the error's code");
}

function judgeHttp(bytes: Uint8Array): string {
  let offset = 0;
  let count = 0;
  let closed = false;
  while (offset < bytes.length) {
    assert.ok(!closed, "nothing follows a response with Connection: close");
    const rest = decoder.decode(bytes.subarray(offset));
    const end = rest.indexOf("\r\n\r\n");
    assert.ok(end > 0, "a complete response head");
    const [status, ...lines] = rest.slice(0, end).split("\r\n");
    const match = /^HTTP\/1\.1 (\d{3}) [A-Za-z ]+$/.exec(status);
    assert.ok(match, `status line ${JSON.stringify(status)}`);
    const code = Number(match[1]);
    const headers = new Map(lines.map((line) => {
      const colon = line.indexOf(": ");
      assert.ok(colon > 0, `header ${JSON.stringify(line)}`);
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 2)];
    }));
    assert.equal(headers.get("cache-control"), "no-store");
    assert.ok(headers.has("content-type"));
    const length = Number(headers.get("content-length"));
    assert.ok(Number.isInteger(length) && length > 0, "Content-Length");
    const connection = headers.get("connection");
    assert.ok(connection === "close" || connection === "keep-alive", `Connection: ${connection}`);
    if (code === 405) assert.equal(headers.get("allow"), "GET, HEAD");
    closed = connection === "close";
    offset += encoder.encode(rest.slice(0, end + 4)).length;
    // A HEAD answer has no body: what follows is the next response or the end.
    const next = decoder.decode(bytes.subarray(offset, offset + 9));
    if (next === "" || next === "HTTP/1.1 ") {
      // An answer to HEAD: headers only, whatever the status.
    } else {
      const body = decoder.decode(bytes.subarray(offset, offset + length));
      assert.equal(encoder.encode(body).length, length, "the whole body arrived");
      if (body.startsWith("{")) judgeJson(JSON.parse(body), code);
      else {assert.match(
          body,
          /(healthz|livez|readyz|startupz) check (passed|passed with warnings|failed)\n$/,
          "verbose text",
        );}
      offset += length;
    }
    count++;
  }
  return count > 1 ? "http pipelined" : "http";
}

/** The start and end of a long text. */
function shorten(text: string): string {
  return text.length > 900 ? `${text.slice(0, 500)} … ${text.slice(-400)}` : text;
}

async function runCase(path: string, c: Case): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path });
  let hung: ReturnType<typeof setTimeout> | undefined;
  let answer: Uint8Array | undefined;
  try {
    const writing = (async () => {
      try {
        if (c.trickle) {
          for (let i = 0; i < c.bytes.length; i++) await conn.write(c.bytes.subarray(i, i + 1));
        } else {
          let written = 0;
          while (written < c.bytes.length) written += await conn.write(c.bytes.subarray(written));
        }
        if (c.closeWrite) await conn.closeWrite();
      } catch (error) {
        if (!isDisconnect(error)) throw error;
      }
    })();
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    const timedOut = new Promise<"hung">((resolve) => hung = setTimeout(resolve, HANG_MS, "hung"));
    for (;;) {
      let n: number | null | "hung";
      try {
        n = await Promise.race([conn.read(buf), timedOut]);
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionReset) break;
        throw error;
      }
      if (n === "hung") throw new Error(`The server did not close within ${HANG_MS} ms`);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    await writing;
    answer = concat(...chunks);
    return judge(answer);
  } catch (error) {
    const shown = decoder.decode(c.bytes.subarray(0, 300));
    throw new Error(
      `Fuzz case ${c.index} (seed ${SEED}, closeWrite ${c.closeWrite}, trickle ${c.trickle}) failed: ${
        (error as Error).message
      }\nrequest (${c.bytes.length} bytes): ${JSON.stringify(shown)}\nanswer: ${
        answer ? JSON.stringify(shorten(decoder.decode(answer))) : "(none)"
      }`,
      { cause: error },
    );
  } finally {
    clearTimeout(hung);
    conn.close();
  }
}

Deno.test("mutated requests always get a documented answer and never leak a connection", async () => {
  using rejections = watchRejections();
  await using sock = await tempSocket();
  const health = new Health({ ready: true })
    .add("db", () => "pass")
    .add("cache", () => "pass", { kinds: ["live", "ready"] });
  await using server = await serve(sock.path, health, {
    requestTimeout: 150,
    idleTimeout: 100,
    lineQuiet: 20,
    maxConnections: 4 * CONCURRENCY,
  });
  const kinds = new Map<string, number>();
  const cases = generate(CASES);
  const started = performance.now();
  let done = 0;
  while (done < CASES) {
    const batch: Case[] = [];
    for (let i = 0; i < BATCH; i++) {
      const next = cases.next();
      if (next.done) break;
      batch.push(next.value);
    }
    let cursor = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (cursor < batch.length) {
        const kind = await runCase(sock.path, batch[cursor++]);
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      }
    }));
    done += batch.length;
    // After each batch: nothing left open, and a normal probe in both framings works.
    await waitUntil(() => server.connections === 0, `no connection is left after ${done} cases`);
    await assertServes(sock.path);
    await assertServesHttp(sock.path);
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `fuzz: ${CASES} cases (seed ${SEED}) in ${seconds.toFixed(1)} s, ${Math.round(CASES / seconds)}/s; answers: ${
      JSON.stringify(Object.fromEntries([...kinds].sort()))
    }`,
  );
  assert.ok((kinds.get("line report") ?? 0) > 0 && (kinds.get("http") ?? 0) > 0, "the corpus still yields answers");
  await rejections.check();
});
