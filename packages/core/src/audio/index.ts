export {
  linearToMulaw,
  mulawToLinear,
  linearToAlaw,
  alawToLinear,
  encodeMulaw,
  decodeMulaw,
  encodeAlaw,
  decodeAlaw,
} from './g711.js';
export { createResampler } from './resampler.js';
export type { Resampler } from './resampler.js';
export { Framer } from './framer.js';
export { PlayoutClock } from './playout-clock.js';
export { samplesToMs, msToSamples, int16ToFloat32, float32ToInt16 } from './pcm.js';
export { PcmHistory } from './pcm-history.js';
export { Pcm16Assembler } from './pcm16-assembler.js';
