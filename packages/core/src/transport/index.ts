export * from './frames.js';
export * from './errors.js';
export * from './open.js';
export * from './hold.js';
export * from './handshake.js';
export * from './keepalive.js';
export * from './live-socket.js';
