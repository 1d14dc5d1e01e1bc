"""Real-time charging: the engine (batches of charging requests against Redis), the
Cython rater, and the sweeper that settles sessions whose CCR-T never came."""
