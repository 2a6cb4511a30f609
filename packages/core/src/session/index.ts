export * from './gap-buffer.js';
export * from './streaming-session.js';
