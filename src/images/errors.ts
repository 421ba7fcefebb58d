/**
 * Bad input to an image operation (a hostile archive entry, a digest that does not match, a
 * build that failed): the message says what was wrong and what to do; `entry` names the file,
 * archive member or layer it is about, when there is one.
 */
export class ImageError extends Error {
  constructor(
    message: string,
    readonly entry?: string,
  ) {
    super(message);
    this.name = 'ImageError';
  }
}
