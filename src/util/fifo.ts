/**
 * A first-in first-out queue whose shift is O(1) (Array.shift moves every element): the DHCP
 * server's datagram queue and the TFTP server's waiting requests. `pop` takes the newest item
 * instead (DHCP's adaptive LIFO under congestion).
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }
  /** The newest item. */
  pop(): T | undefined {
    if (this.length === 0) return undefined;
    return this.items.pop();
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    // Compact once the consumed part is the larger half.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
