use crate::CryptoError;

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(CryptoError::Random)
}
