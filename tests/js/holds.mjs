// Opens a feed directory hypernar wrote (oplog, tree, bitfield, data: the
// layout hypercore 10 reads) with the JavaScript reference and prints, as
// one JSON line, its length and the runs of blocks it says it holds.
//
//   node holds.mjs <feed dir> <hex public key>
const [dir, keyHex] = process.argv.slice(2)
const { default: Hypercore } = await import('hypercore10')
const core = new Hypercore(dir, Buffer.from(keyHex, 'hex'), { writable: false })
await core.ready()
const runs = []
for (let i = 0; i < core.length; i++) {
  if (!(await core.has(i))) continue
  const last = runs[runs.length - 1]
  if (last && last[1] === i) last[1] = i + 1
  else runs.push([i, i + 1])
}
console.log(JSON.stringify({ length: core.length, runs }))
await core.close()
