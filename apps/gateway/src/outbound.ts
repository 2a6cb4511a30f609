/** Agent audio pacing lives in core with the call runtime; re-exported for the gateway's public API. */
export { OutboundPacer, OutboundQueue, type AudioPacer, type OutboundFrame, type Pumpable } from '@stsgate/core';
