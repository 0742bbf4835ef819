/** Logging goes through `debug` namespaces; errors and warnings are always on. */
import createDebug from 'debug';

export const ALWAYS_ON = ['stagefs:error', 'stagefs:warn', 'stagefs:info'];

export function enableLogging(env: NodeJS.ProcessEnv = process.env): void {
  const chosen = (env.DEBUG ?? '').split(',').filter(Boolean);
  createDebug.enable([...ALWAYS_ON, ...chosen].join(','));
}
