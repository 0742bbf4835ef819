/**
 * Node options the mount daemon runs with. A young generation of 4 MiB semi-spaces (Node's
 * default is 16) is collected four times as often, and with it the buffers of answered
 * requests and of GET bodies that wait there as garbage: the daemon's peak memory is tens of
 * MiB lower (bench, "Peak memory"). The shebang of src/cli/main.ts carries the same options, for
 * `stagefs` run as a command (systemd units, mount(8)); a unit test holds the two together.
 */
export const DAEMON_NODE_OPTIONS = ['--max-semi-space-size=4'];
