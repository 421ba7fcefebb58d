/** What a node's next network boot does (set by `node set boot`, the API and reinstall). */
export type BootMode = 'provision' | 'local' | 'once' | 'disabled';
export const BOOT_MODES: readonly BootMode[] = ['provision', 'local', 'once', 'disabled'];

export interface Node {
  /** Canonical MAC (aa:bb:cc:dd:ee:ff): the node's identity, Perceus' NODEID. */
  mac: string;
  name: string;
  group: string;
  vnfs: string;
  enabled: boolean;
  debug: boolean;
  /** Last provisionary state the node reported ('' until it first asks). */
  state: string;
  /** Current IPv4 address ('' when unknown); a reservation when set by an admin. */
  ip: string;
  /** ms since epoch of the last request from the node, null if never. */
  lastContact: number | null;
  boot: BootMode;
  attrs: Record<string, string>;
  createdAt: number;
  updatedAt: number;
}

export interface Group {
  name: string;
  attrs: Record<string, string>;
  createdAt: number;
}

export interface Vnfs {
  name: string;
  /** File names inside <statedir>/vnfs/<name>/ */
  kernel: string;
  initrd: string;
  cmdline: string;
  attrs: Record<string, string>;
  createdAt: number;
  /** The current revision of its root filesystem; null/absent: a kernel+initrd VNFS without one. */
  currentRev?: number | null;
  arch?: string;
}

export interface Lease {
  mac: string;
  ip: string;
  /** ms since epoch */
  expiresAt: number;
  hostname: string;
  /** 'offered' is held briefly between OFFER and REQUEST; 'bound' after ACK. */
  state: 'offered' | 'bound' | 'released' | 'declined';
  /** Subnet (pool) the lease was handed from, e.g. "10.0.0.0/24". */
  subnet: string;
  updatedAt: number;
}

/** One boot event: DHCP/TFTP/HTTP/provision steps, failures, registrations. */
export interface BootEvent {
  id?: number;
  /** ms since epoch */
  time?: number;
  mac?: string;
  node?: string;
  /** dotted kind, e.g. dhcp.offer, tftp.done, http.ipxe, http.kernel, provision.start, nodescript.fail */
  kind: string;
  detail?: Record<string, unknown>;
}

/** Sink the protocol servers report to; the store persists, the logger prints, metrics count. */
export interface EventSink {
  record(ev: BootEvent): void;
  /**
   * Optional: who a peer address is (its lease's MAC, the node's name), for a caller reporting
   * several events of one peer (a TFTP transfer's start and end): it asks once and passes the
   * answer with each event, so they all name the same node and the address is not looked up
   * again. No node found is `mac: ''`, which the sink stores as no MAC without looking again.
   */
  attribute?(address: string): { mac: string; node?: string };
}

/** A node record with the defaults a new node gets (in-memory backends and tests build them). */
export function nodeRecord(fields: Partial<Node> & { mac: string; name: string }, now = 0): Node {
  return {
    group: 'cluster',
    vnfs: '',
    enabled: true,
    debug: false,
    state: '',
    ip: '',
    lastContact: null,
    boot: 'provision',
    attrs: {},
    createdAt: now,
    updatedAt: now,
    ...fields,
  };
}
