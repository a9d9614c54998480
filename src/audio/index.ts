/**
 * The audio front end: any file → 16 kHz mono float32 (decode.ts), long-audio segmentation
 * (segment.ts) and speech regions from voice activity probabilities (speech-regions.ts),
 * Whisper-style log-mel features (features.ts).
 */
export {
  AudioDecodeError,
  decodeAudio,
  MIN_SOURCE_SAMPLE_RATE,
  TARGET_SAMPLE_RATE,
  type AudioDecodeErrorCode,
  type AudioDecodeErrorDetails,
  type AudioDecoderName,
  type DecodedAudio,
  type DecodeOptions,
} from './decode.ts';
export { featureFrameCount, FeatureConfigError, loadFeatureConfig, logMelSpectrogram, parseFeatureConfig, type FeatureConfig } from './features.ts';
export { findFfmpeg, type FfmpegInfo } from './ffmpeg.ts';
export { mixToMono, normalizePeak, MonoResampler } from './normalize.ts';
export { resample, Resampler } from './resample.ts';
export { DEFAULT_MIN_GAP_SECONDS, splitAtQuietPoints, splitAtSpeech, type AudioSegment, type QuietSplitOptions, type SampleRange, type SpeechSplitOptions } from './segment.ts';
export { speechRegions, type SpeechRegion, type SpeechRegionOptions } from './speech-regions.ts';
export { decodeWav, encodeWav, type WavData, type WavFormat } from './wav.ts';
