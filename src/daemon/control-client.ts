/** Sends one request to a mount's control socket and yields its replies. */
import { connect } from 'node:net';
import { CommandError } from '../errors';
import { decodeLines, encode, type ControlReply, type ControlRequest } from './control-protocol';

export async function* control(socketPath: string, request: ControlRequest): AsyncGenerator<ControlReply> {
  const socket = connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (err: NodeJS.ErrnoException) =>
      reject(new CommandError(`cannot reach the mount's control socket ${socketPath} (${err.code ?? err.message})`)),
    );
  });
  socket.write(encode(request));
  try {
    for await (const reply of decodeLines<ControlReply>(socket)) {
      yield reply;
      if (reply.type === 'end') return;
    }
    throw new CommandError('the mount closed the control connection before answering');
  } finally {
    socket.destroy();
  }
}
