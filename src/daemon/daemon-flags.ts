/**
 * Node options the mount daemon runs with. A young generation of 2 MiB semi-spaces (Node's
 * default is 16) is collected far more often, and with it the buffers of answered requests and
 * of GET bodies that wait there as garbage: the daemon's peak memory is tens of MiB lower
 * (bench, "Peak memory"), for about a tenth more CPU in the daemon (measured on a 256 MiB read
 * and copy through the fuse-native engine; within the noise of a loaded machine). The shebang of src/cli/main.ts carries the same options, for
 * `stagefs` run as a command (systemd units, mount(8)); a unit test holds the two together.
 */
export const DAEMON_NODE_OPTIONS = ['--max-semi-space-size=2'];
