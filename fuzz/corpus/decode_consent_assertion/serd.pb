
	asl-leccec-0001 af8fa81f40fb8e6b8c961d29f2afaab5"()*28…ÊÔ	@ÿ™
H