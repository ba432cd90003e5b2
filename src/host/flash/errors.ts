import { PiImageError } from '../errors.js';

/** Flashing was refused before anything was written. */
export class FlashRefusedError extends PiImageError {}

/** The bytes read back from the target are not the image's: names the block range. */
export class VerifyError extends PiImageError {
  constructor(
    readonly range: { first: number; last: number; offset: number; length: number },
    message: string,
    hint?: string,
  ) {
    super(message, hint);
  }
}

/** The image itself does not match its bmap (damaged image, .zst or bmap of another image). */
export class ImageMismatchError extends PiImageError {}

/** Writing stopped part-way on a device: the card holds part of the image and will not boot. */
export class HalfWrittenError extends PiImageError {}
