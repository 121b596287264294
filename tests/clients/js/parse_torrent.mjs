// Parse a .torrent with the npm package parse-torrent; print its info-hash and fields as JSON.
import parseTorrent from 'parse-torrent'
import { readFileSync } from 'node:fs'

const parsed = await parseTorrent(readFileSync(process.argv[2]))
console.log(JSON.stringify({
  infoHash: parsed.infoHash,
  name: parsed.name,
  length: parsed.length,
  pieceLength: parsed.pieceLength,
  pieces: parsed.pieces.length,
  announce: parsed.announce,
  urlList: parsed.urlList,
}))
