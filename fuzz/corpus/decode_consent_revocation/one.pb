
	asl-leccec-0001