package runtime

func registerPad[T Float](r registry[T]) {}
