// Package nfio (directory io/) holds nfschwinger's files: the params.toml
// schema with its defaults and validation, and the HDF5 files a run reads and
// writes. The package is named nfio, not io, so that it does not shadow the
// standard library's io in files that need both; import it as
//
//	nfio "nfschwinger/io"
//
// Nothing here is collective: files are written by one process (rank 0)
// and read by any.
//
// # params.toml
//
// Four sections, plus two optional ones; defaults in brackets, required keys
// marked. Unknown keys or sections, wrong types and values out of range are
// errors naming the key (see Config and Parse).
//
//	[lattice] L (required, multiple of 4), beta [2.0], kappa [0.276]
//	[model]   n_layers [48], n_knots [9], hidden_channels [[64, 64]],
//	          kernel_size [3], dilation [[1, 2, 3]] (len(hidden_channels)+1
//	          entries), masking ["2x1"], precision ["float32"] | "float64",
//	          conv_precision ["float32"] | "bf16" (float32 flows, CPUs with AVX512-BF16 or AMX),
//	          conv_algorithm ["auto"] | "direct" (auto: Winograd where it fits, AVX-512)
//	[train]   estimator ["reinforce"] | "rt" | "path", steps (required),
//	          batch_size (required, over all ranks), micro_batch [batch_size]
//	          (per rank, divides batch_size/ranks), learning_rate [2.5e-4],
//	          adam_betas [[0.9, 0.999]], adam_eps [1e-8], grad_clip [0 = off],
//	          grad_clip_value [0 = off], init_from [""], seed (required), log_every [10], checkpoint_every [500],
//	          acceptance_every [0 = off], acceptance_samples [batch_size]
//	[io]      out_dir ["run"], restart ["auto"] | "never" | a checkpoint path
//	[sample]  n_samples [0 = no sampling], batch_size [train.micro_batch],
//	          save_configs [false], seed [train.seed]
//	[compute] device ["auto"] | "cpu" | "cuda"
//	[slurm]   partition, account, nodes [1], ntasks [1], cpus_per_task [1],
//	          gpus_per_task [0], time ["01:00:00"], signal_seconds [300],
//	          max_requeues [10]
//
// # HDF5 files
//
// All files are plain HDF5 (readable with h5py and h5dump), float64 unless
// stated, and written so that a crash never leaves a half-written file in
// place: whole files (checkpoints, measurements) go through WriteAtomic
// (temporary ".NAME.tmp" in the same directory, fsync, rename, directory
// fsync); append-only files (history, chain) use extendible datasets whose
// first axis grows (internal/h5.CreateExtendible, Append) and are flushed
// after every append, so a killed run keeps every row written.
//
// history.h5 (out_dir/history.h5, History): one row per logged step, every
// column its own one-dimensional extendible dataset of the same length,
// chunked by 256 rows, with string attributes "unit" and "description":
//
//	step           int64    optimizer steps completed
//	loss           float64  surrogate loss of the estimator, batch mean
//	ess            float64  effective sample size per configuration, eq. (26)
//	logq_mean      float64  batch mean of log q(φ)
//	logp_mean      float64  batch mean of log p(φ) = −S(φ)
//	grad_norm      float64  global L2 norm of the gradient before clipping
//	learning_rate  float64  learning rate of the step
//	skipped        int64    steps skipped so far for non-finite gradients
//	wall_time      float64  seconds of training so far, summed over restarts
//	three_pass     int64    1 when the step ran the three-pass REINFORCE form
//	acceptance     float64  Metropolis acceptance of the flow after the step
//	                        (train.acceptance_every), NaN when not measured
//
// A run restarted from the checkpoint of step k rebuilds the file from the
// rows the checkpoint holds (RestoreHistory; the old file, never parsed,
// is kept as history.prev.h5); from a format-1 checkpoint it reopens the
// file with OpenHistory(path, k), which drops rows with step > k first.
//
// checkpoint.h5 (out_dir/checkpoint.h5, previous one kept as
// checkpoint.prev.h5; see WriteCheckpoint): /model with the weights
// /model/layers/KK/convJ/weight (C_out, C_in, K, K) and
// /model/layers/KK/convJ/bias (C_out), KK = 00, 01, …, J = 0, 1, 2, and the
// architecture as attributes of /model; /optimizer with the Adam moments
// m/… and v/… in the same tree and the step count; /train with the step,
// skipped and wall_time counters; /rng with the stream scheme; /config with
// the params.toml text (Config.Text); /history with the rows of history.h5
// up to the checkpoint's step (same column names); root attributes
// format_version (2) and checksum_sha256 (over every array, counter and
// history value, verified on load). The
// file ends with a trailer, "NFSCSUM1" and the SHA-256 of every byte before
// it, verified before HDF5 parses the file.
//
// chain.h5 (out_dir/chain.h5, see Chain): one row per NMCMC chain step in
// extendible datasets accepted (uint8), logq, logp, logw of the proposal,
// the chain state's condensate, sign, topological_charge, plaquette after
// the accept/reject step, the proposal's own observables under proposal/,
// with save_configs the configurations (N, 2, L, L), float32; root
// attributes with the seed, lattice, model hash, source checkpoint and the
// acceptance counters; /summary the estimates of `nfschwinger analyze`.
//
// Output of `nfschwinger measure` (any name): datasets of shape (N)
// gauge_action, fermion_action, action, log_abs_det_D, sign_det_D,
// condensate, topological_charge, mean_cos_plaquette, and with -force
// force (N, 2, L, L) = dS/dθ, with a model logq (N) and z (N, 2, L, L);
// root attributes L (int64), beta, kappa (float64), source (the input
// file's name) and, with a model, model (see CreateMeasure; its input,
// dataset links, is read by OpenLinks). Conventions as in
// shared/vectors/README.md.
//
// Damaged files. The HDF5 library can crash or hang on a damaged file, so
// files are never parsed in the run's own process before they are known to
// be sound: checkpoints by their trailer, chain.h5 (and in analyze
// history.h5) by a probe in a child process (ProbeChain, ProbeHistory).
package nfio
