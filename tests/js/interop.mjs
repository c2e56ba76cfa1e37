// Interop with the JavaScript hypercore reference, driven by tests/interop.rs.
//
//   node interop.mjs <10|11> <host:port> <storage dir> <key,key,...> <data key>
//
// Connects to a hypernar node, replicates the given feeds fully, prints one
// JSON line with the data feed's length and the SHA-256 of each block, then
// seeds the feeds on 127.0.0.1 and prints "listening <port>" until killed.
import net from 'node:net'
import crypto from 'node:crypto'

const [version, hostport, dir, keysCsv, dataKeyHex] = process.argv.slice(2)
const { default: Hypercore } = await import(version === '11' ? 'hypercore11' : 'hypercore10')
const opts = version === '11' ? { compat: true } : {}
const keys = keysCsv.split(',').map((h) => Buffer.from(h, 'hex'))
const cores = keys.map((k, i) => new Hypercore(`${dir}/${i}`, k, opts))
await Promise.all(cores.map((c) => c.ready()))

function replicate (isInitiator, socket) {
  const stream = cores[0].replicate(isInitiator)
  for (const c of cores.slice(1)) c.replicate(stream)
  stream.pipe(socket).pipe(stream)
  stream.on('error', () => {})
  socket.on('error', () => {})
  return stream
}

const [host, port] = hostport.split(':')
const socket = net.connect(Number(port), host)
replicate(true, socket)

for (const c of cores) {
  while (c.length === 0) await c.update({ wait: true })
  await c.download({ start: 0, end: c.length }).done()
}
const data = cores.find((c) => c.key.toString('hex') === dataKeyHex)
const hashes = []
for (let i = 0; i < data.length; i++) {
  const block = await data.get(i)
  hashes.push(crypto.createHash('sha256').update(block).digest('hex'))
}
console.log(JSON.stringify({ length: data.length, hashes }))
socket.destroy()

const server = net.createServer((sock) => replicate(false, sock))
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
