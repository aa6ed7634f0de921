// Preloaded with `node --import` into servers that have no host option (server-everything listens
// on every interface): pins whatever they listen on to 127.0.0.1, so tests never open a port to
// the network.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const callback = args.find((a) => typeof a === 'function');
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    return listen.call(this, { port: Number(first), host: '127.0.0.1' }, callback);
  }
  if (first && typeof first === 'object' && !Array.isArray(first) && 'port' in first) {
    return listen.call(this, { ...first, host: '127.0.0.1' }, callback);
  }
  return listen.apply(this, args);
};
