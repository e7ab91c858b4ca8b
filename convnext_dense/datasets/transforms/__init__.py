from .guarded_load import BadSampleError, GuardedLoad

__all__ = ['BadSampleError', 'GuardedLoad']
