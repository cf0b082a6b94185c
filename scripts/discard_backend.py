"""A fake Swift cluster that reads every request body and throws it away: tempauth-like
login, `/healthcheck`, 204 for bodiless requests, 201 for a PUT once its whole body
(`Content-Length` or chunked) has been read. For measuring what the federation proxy holds
in memory while it streams uploads, without a real cluster's disk in the way.

    python scripts/discard_backend.py PORT
"""

import asyncio
import sys

BUF = 1 << 20


class Conn(asyncio.BufferedProtocol):
    def __init__(self, port: int):
        self.port = port
        self.buf = bytearray(BUF)
        self.head = b""
        self.left = 0  # body bytes still to discard (Content-Length)
        self.chunked = None  # bytes of a chunked body's tail being scanned
        self.method = b""

    def connection_made(self, transport):
        self.t = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, n):
        data = memoryview(self.buf)[:n]
        while data:
            if self.left:
                take = min(self.left, len(data))
                self.left -= take
                data = data[take:]
                if not self.left:
                    self.answer()
                continue
            if self.chunked is not None:
                # Only the last chunk matters: keep the tail, never the data (a bench
                # backend; data that itself holds "\r\n0\r\n\r\n" would end early).
                self.chunked = (self.chunked + bytes(data[-7:]))[-7:]
                data = data[:0]
                if self.chunked.endswith(b"\r\n0\r\n\r\n"):
                    self.chunked = None
                    self.answer()
                continue
            self.head += bytes(data)
            data = data[:0]
            if b"\r\n\r\n" not in self.head:
                if len(self.head) > 65536:
                    self.t.close()
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            self.head = b""
            lines = head.split(b"\r\n")
            self.method, self.path = lines[0].split(b" ")[:2]
            length, chunked = 0, False
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
            if chunked:
                self.chunked = b"\r\n"
            elif length:
                self.left = length
            else:
                self.answer()
            data = memoryview(rest)

    def answer(self):
        if self.path == b"/auth/v1.0":
            extra = (b"X-Auth-Token: AUTH_tkdiscard\r\nX-Auth-Token-Expires: 86400\r\n"
                     b"X-Storage-Url: http://127.0.0.1:%d/v1/AUTH_test\r\n" % self.port)
            status = b"200 OK"
        elif self.method == b"PUT":
            extra, status = b"Etag: d41d8cd98f00b204e9800998ecf8427e\r\n", b"201 Created"
        elif self.path == b"/healthcheck":
            extra, status = b"", b"200 OK"
        else:
            extra, status = b"", b"204 No Content"
        self.t.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n" + extra + b"\r\n")


async def main(port: int):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(port), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
