// Peer: Node on a Unix socket, answering the same bytes as healthsock.
// `net`: line mode (read to the newline, write, close). `http`: node:http.
// Usage: node bench/node_peer.mjs net|http SOCKET LINE_B64 BODY_B64
// Prints "ready" once listening; exits when its stdin ends.
import { createServer as createNet } from "node:net";
import { createServer as createHttp } from "node:http";

const [kind, path, lineB64, bodyB64] = process.argv.slice(2);
const line = Buffer.from(lineB64, "base64");
const body = Buffer.from(bodyB64, "base64");

const server = kind === "net"
  ? createNet((socket) => {
    let received = 0;
    socket.on("data", (chunk) => {
      received += chunk.length;
      if (chunk.includes(10)) socket.end(line);
      else if (received > 8192) socket.destroy();
    });
    socket.on("error", () => {});
  })
  : createHttp((_req, res) => {
    res.writeHead(200, {
      "content-type": "application/health+json",
      "content-length": body.length,
      "cache-control": "no-store",
    });
    res.end(body);
  });
server.listen(path, () => console.log("ready"));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
