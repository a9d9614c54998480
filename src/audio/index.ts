/**
 * The audio front end: any file → 16 kHz mono float32 (decode.ts), long-audio segmentation
 * (segment.ts), Whisper-style log-mel features (features.ts).
 */
export { AudioDecodeError, decodeAudio, TARGET_SAMPLE_RATE, type AudioDecodeErrorCode, type AudioDecoderName, type DecodedAudio, type DecodeOptions } from './decode.ts';
export { featureFrameCount, FeatureConfigError, loadFeatureConfig, logMelSpectrogram, parseFeatureConfig, type FeatureConfig } from './features.ts';
export { findFfmpeg, type FfmpegInfo } from './ffmpeg.ts';
export { mixToMono, normalizePeak, MonoResampler } from './normalize.ts';
export { resample, Resampler } from './resample.ts';
export { splitAtQuietPoints, type AudioSegment, type QuietSplitOptions } from './segment.ts';
export { decodeWav, encodeWav, type WavData, type WavFormat } from './wav.ts';
