// Stand-in for the npm package webrtc-polyfill, whose node-datachannel dependency downloads a
// binary at install time (which fails offline). @roamhq/wrtc ships its binary on npm.
// @thaunknown/simple-peer does `import { RTCPeerConnection, ... } from 'webrtc-polyfill'`.
import wrtc from '@roamhq/wrtc'

export const RTCPeerConnection = wrtc.RTCPeerConnection
export const RTCSessionDescription = wrtc.RTCSessionDescription
export const RTCIceCandidate = wrtc.RTCIceCandidate
export const RTCDataChannel = wrtc.RTCDataChannel
export default wrtc
